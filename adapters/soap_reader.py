"""Reading the replies of document/literal SOAP operations with a plan compiled from the WSDL.

zeep stays the authority on the WSDL, the request and faults; what this module replaces is its
generic reply parser, which walks indicator objects and builds a ``CompoundValue`` per element,
a third of the bus's CPU on a population lookup (``bench/run.py``, bus-soap). At start-up
:func:`compile_reader` turns an operation's output element, as zeep parsed it, into a plan: for
every complex type a table from child tag to field (its attribute name, whether it repeats, its
value's converter or nested plan). A reply is then read in one pass over its elements.

Only what the plan can read exactly as zeep would is compiled: complex types made of one
sequence of elements (any may repeat, be optional or nillable) and simple-typed attributes,
with zeep's own ``pythonvalue`` converting each value. An operation with a choice, ``xsd:any``,
a nested group, a repeating sequence or simple content gets no reader (:class:`Unsupported`)
and zeep reads its replies. A reply that uses ``xsi:type`` raises :class:`ReadWithZeep`, and its
caller hands that one reply to zeep.

The result has zeep's shape, for code written against zeep: a node per complex element with an
attribute per child element and per XML attribute (``None`` when absent, a list for repeating
elements), and the same unwrapping of a body whose element has one child and no attribute.
Stricter than zeep on four points, each a :class:`ReplyMismatch`: a value its type cannot
read (zeep logs it, with the value, and gives ``None``), an ``xsd:boolean`` other than true,
false, 1 or 0 (zeep reads it as false: a verdict "True" would become a mismatch), a second
occurrence of a single element, and an element of another namespace. Element order within a
sequence is not checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import zeep.xsd
from lxml import etree

__all__ = ["ReadWithZeep", "ReplyMismatch", "ReplyReader", "Unsupported", "compile_reader"]

XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


class Unsupported(Exception):
    """The operation's output uses a construct the plan does not read: zeep reads it."""


class ReadWithZeep(Exception):
    """This reply uses a construct the plan does not read (``xsi:type``): zeep reads it."""


class ReplyMismatch(Exception):
    """The reply does not match the operation's output schema. The message names the element,
    never its value."""


@dataclass(slots=True)
class _Plan:
    """How to read one complex type."""

    type_name: str
    by_tag: dict[str, _Field] = field(default_factory=dict)  # Clark tag and bare local name
    attributes: dict[str, tuple[str, Callable[[str], Any]]] = field(default_factory=dict)
    fields: tuple[_Field, ...] = ()


@dataclass(frozen=True, slots=True)
class _Field:
    name: str  # the attribute of the result, as zeep names it
    tag: str  # Clark notation
    namespace: str | None
    many: bool
    required: bool
    convert: Callable[[str], Any] | None  # a simple type
    plan: _Plan | None  # a complex type


def _compile_type(xsd_type: Any, plans: dict[int, _Plan]) -> _Plan:
    known = plans.get(id(xsd_type))
    if known is not None:  # a recursive or shared type: one plan, filled once
        return known
    name = str(getattr(xsd_type, "qname", None) or type(xsd_type).__name__)
    plan = plans[id(xsd_type)] = _Plan(name)
    nested = xsd_type.elements_nested
    elements: list[Any] = []
    if nested:
        if len(nested) != 1 or not isinstance(nested[0][1], zeep.xsd.Sequence):
            raise Unsupported(f"{name}: not one sequence of elements")
        sequence = nested[0][1]
        if sequence.accepts_multiple or sequence.is_optional:
            raise Unsupported(f"{name}: a repeating or optional sequence")
        for item in sequence:
            if not isinstance(item, zeep.xsd.Element) or isinstance(item, zeep.xsd.Any):
                raise Unsupported(f"{name}: {type(item).__name__} in its sequence")
            elements.append(item)
    if len(xsd_type.elements) != len(elements):  # simple content, or elements of a base type
        raise Unsupported(f"{name}: content other than its own sequence of elements")
    for attr_name, attribute in xsd_type.attributes:
        if not isinstance(attribute.type, zeep.xsd.AnySimpleType):
            raise Unsupported(f"{name}: attribute {attr_name} is not of a simple type")
        plan.attributes[attribute.qname.text] = (attr_name, attribute.type.pythonvalue)
    fields = [_compile_element(element, plans) for element in elements]
    for item in fields:
        plan.by_tag[item.tag] = item
        plan.by_tag.setdefault(etree.QName(item.tag).localname, item)
    plan.fields = tuple(fields)
    return plan


def _compile_element(element: Any, plans: dict[int, _Plan]) -> _Field:
    qname = element.qname
    xsd_type = element.type
    convert: Callable[[str], Any] | None = None
    plan: _Plan | None = None
    if isinstance(xsd_type, zeep.xsd.Boolean):
        convert = _boolean
    elif isinstance(xsd_type, zeep.xsd.AnySimpleType):
        convert = xsd_type.pythonvalue
    elif isinstance(xsd_type, zeep.xsd.ComplexType):
        plan = _compile_type(xsd_type, plans)
    else:
        raise Unsupported(f"{qname.text}: a type of kind {type(xsd_type).__name__}")
    return _Field(
        name=element.attr_name,
        tag=qname.text,
        namespace=qname.namespace,
        many=bool(element.accepts_multiple),
        required=not element.is_optional,
        convert=convert,
        plan=plan,
    )


class ReplyReader:
    """Reads the ``soap:Body`` child of one operation's successful reply."""

    def __init__(self, body_element: Any) -> None:
        self._root = _compile_element(body_element, {})
        plan = self._root.plan
        # zeep returns the only child's value of a body element with one child and no attribute
        self._unwrap = plan is not None and len(plan.fields) == 1 and not plan.attributes

    def read(self, element: etree._Element) -> Any:
        """The reply's value, shaped as zeep's; :class:`ReplyMismatch` if it does not match."""
        if element.tag != self._root.tag:
            raise ReplyMismatch(f"the reply's body is {_local(element.tag)}, not the expected one")
        value = _read(element, self._root)
        if self._unwrap and value is not None:
            return getattr(value, self._root.plan.fields[0].name)  # type: ignore[union-attr]
        return value


def compile_reader(operation: Any) -> ReplyReader:
    """A reader for a zeep ``SoapOperation``'s replies; :class:`Unsupported` when its output
    is not one element of a type the plan reads (rpc style, several parts, headers...)."""
    output = operation.output
    body = getattr(output, "body", None)
    if body is None or getattr(output, "_is_body_wrapped", True):
        raise Unsupported(f"{operation.name}: not a document/literal single-part output")
    if output.header is not None and output.header.type.elements:
        raise Unsupported(f"{operation.name}: SOAP headers in the output")
    return ReplyReader(body)


def _read(element: etree._Element, item: _Field) -> Any:
    if XSI_TYPE in element.attrib:
        raise ReadWithZeep(f"{_local(element.tag)} carries xsi:type")
    if element.get(XSI_NIL) in ("true", "1"):
        return None
    if item.convert is not None:
        text = element.text
        if text is None:
            return None
        try:
            return item.convert(text)
        except (TypeError, ValueError, ArithmeticError):  # the value is not quoted: data
            raise ReplyMismatch(f"{_local(element.tag)} is not a valid value of its type") from None
    plan = item.plan
    assert plan is not None  # a field has a converter or a plan
    values: dict[str, Any] = {f.name: [] if f.many else None for f in plan.fields}
    seen: set[str] = set()
    for child in element:
        tag = child.tag
        if not isinstance(tag, str):  # a comment or a processing instruction
            continue
        sub = plan.by_tag.get(tag)
        if sub is None:
            namespace = etree.QName(tag).namespace
            sub = plan.by_tag.get(etree.QName(tag).localname) if namespace is None else None
            if sub is None:
                raise ReplyMismatch(f"unexpected element {_local(tag)} in {_local(element.tag)}")
        if sub.many:
            values[sub.name].append(_read(child, sub))
        elif sub.name in seen:
            raise ReplyMismatch(f"{_local(tag)} repeated in {_local(element.tag)}")
        else:
            seen.add(sub.name)
            values[sub.name] = _read(child, sub)
    for required in plan.fields:
        present = values[required.name] if required.many else required.name in seen
        if required.required and not present:
            raise ReplyMismatch(f"{_local(element.tag)} has no {_local(required.tag)}")
    for name, raw in element.attrib.items():
        known = plan.attributes.get(name)
        if known is not None:
            try:
                values[known[0]] = known[1](raw)
            except (TypeError, ValueError, ArithmeticError):
                raise ReplyMismatch(f"attribute {_local(name)} is not a valid value") from None
    for attr_name, _convert in plan.attributes.values():
        values.setdefault(attr_name, None)
    return SimpleNamespace(**values)


def _boolean(text: str) -> bool:
    """xsd:boolean's four spellings; zeep reads anything but true and 1 as false."""
    value = text.strip()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValueError("not an xsd:boolean")


def _local(tag: object) -> str:
    return etree.QName(str(tag)).localname
