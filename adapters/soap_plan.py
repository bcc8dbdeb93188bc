"""Plans compiled from the WSDL for the calls of document/literal SOAP operations: the request
envelope written, the reply read, without zeep's generic machinery on every call.

zeep stays the authority on the WSDL: it loads and parses it, and it still handles faults and
every operation or reply the plans do not cover. What the plans replace is its per-call work,
which walks indicator objects and builds a ``CompoundValue`` per element: on a population lookup
the reply's parsing was a third of the bus's CPU and the request's building a tenth
(``bench/run.py``, bus-soap). At start-up :func:`compile_writer` and :func:`compile_reader` turn
an operation's input and output elements, as zeep parsed them, into plans: for every complex
type its fields in order (name, tag, whether it repeats or may be absent, the value's converter
or nested plan).

Only what a plan can do exactly as zeep would is compiled: complex types made of one sequence of
elements (any may repeat, be optional or nillable), or, on the request side, of one choice of
elements; simple-typed attributes on the reply side, with zeep's own ``pythonvalue`` and
``xmlvalue`` converting each value; children in the element's own namespace (or none). An
operation with anything else (``xsd:any``, nested groups, repeating sequences, simple content,
SOAP headers, WS-Addressing) gets no plan (:class:`Unsupported`) and zeep does its work.

The writer's envelope is byte for byte zeep's (tested on many inputs), so the platform sees no
difference. The reader's result has zeep's shape, for code written against zeep: a node per
complex element with an attribute per child element and per XML attribute (``None`` when
absent, a list for repeating elements), and the same unwrapping of a body whose element has one
child and no attribute. A reply that uses ``xsi:type`` raises :class:`ReadWithZeep`, and its
caller hands that one reply to zeep.

The reader is stricter than zeep on four points, each a :class:`ReplyMismatch`: a value its type
cannot read (zeep logs it, with the value, and gives ``None``), an ``xsd:boolean`` other than
true, false, 1 or 0 (zeep reads it as false: a verdict "True" would become a mismatch), a second
occurrence of a single element, and an element of another namespace. Element order within a
sequence is not checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import zeep.wsdl.bindings
import zeep.xsd
from lxml import etree

from adapters.wire import safe_xml_parser

__all__ = [
    "ReadWithZeep",
    "ReplyMismatch",
    "ReplyReader",
    "RequestMismatch",
    "RequestWriter",
    "Unsupported",
    "compile_reader",
    "compile_writer",
]

XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_ENVELOPE, _BODY, _FAULT = (f"{{{SOAP11_ENV}}}{name}" for name in ("Envelope", "Body", "Fault"))
_PARSER = safe_xml_parser()  # no DTD, no entity, no network; used on the event loop only


class Unsupported(Exception):
    """The operation uses a construct the plans do not cover: zeep does that part."""


class ReadWithZeep(Exception):
    """This reply uses a construct the plan does not read (``xsi:type``): zeep reads it."""


class RequestMismatch(ValueError):
    """The adapter's fields do not fit the operation's input: a field the schema does not have,
    a required one missing, or two options of a choice. The message names the field."""


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
    defaults: dict[str, None] = field(default_factory=dict)  # every single field and attribute
    many: tuple[str, ...] = ()  # the repeating fields, each a new list per element read
    required: tuple[_Field, ...] = ()


@dataclass(frozen=True, slots=True)
class _Field:
    name: str  # the attribute of the result, as zeep names it
    tag: str  # Clark notation
    many: bool
    required: bool
    convert: Callable[[str], Any] | None  # a simple type
    plan: _Plan | None  # a complex type


def _compile_type(xsd_type: Any, plans: dict[int, _Plan]) -> _Plan:
    known = plans.get(id(xsd_type))
    if known is not None:  # a recursive or shared type: one plan, filled once
        return known
    name = _type_name(xsd_type)
    plan = plans[id(xsd_type)] = _Plan(name)
    elements, _group = _elements(xsd_type, name, choice=False)
    for attr_name, attribute in xsd_type.attributes:
        if not isinstance(attribute.type, zeep.xsd.AnySimpleType):
            raise Unsupported(f"{name}: attribute {attr_name} is not of a simple type")
        plan.attributes[attribute.qname.text] = (attr_name, attribute.type.pythonvalue)
    fields = [_compile_element(element, plans) for element in elements]
    for item in fields:
        plan.by_tag[item.tag] = item
        plan.by_tag.setdefault(etree.QName(item.tag).localname, item)
    plan.fields = tuple(fields)
    plan.defaults = {f.name: None for f in fields if not f.many}
    plan.defaults.update((name, None) for name, _convert in plan.attributes.values())
    plan.many = tuple(f.name for f in fields if f.many)
    plan.required = tuple(f for f in fields if f.required)
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
        many=bool(element.accepts_multiple),
        required=not element.is_optional,
        convert=convert,
        plan=plan,
    )


class ReplyReader:
    """Reads one operation's successful replies."""

    def __init__(self, body_element: Any) -> None:
        self._root = _compile_element(body_element, {})
        plan = self._root.plan
        # zeep returns the only child's value of a body element with one child and no attribute
        self._unwrap = (
            plan.fields[0].name
            if plan is not None and len(plan.fields) == 1 and not plan.attributes
            else None
        )

    def read_envelope(self, content: bytes) -> Any:
        """The value of a SOAP 1.1 envelope's body element (see :meth:`read`);
        :class:`ReadWithZeep` for anything else (not well-formed, a DOCTYPE, another root, an
        empty body, a Fault), whose reading and error zeep owns."""
        try:
            root = etree.fromstring(content, _PARSER)
        except etree.XMLSyntaxError:
            raise ReadWithZeep("not well-formed XML") from None
        if root.tag != _ENVELOPE or root.getroottree().docinfo.doctype:
            raise ReadWithZeep("not a plain SOAP 1.1 envelope")
        body = root.find(_BODY)
        child = next(iter(body), None) if body is not None else None
        if child is None or child.tag == _FAULT:
            raise ReadWithZeep("an empty body, or a fault")
        return self.read(child)

    def read(self, element: etree._Element) -> Any:
        """The body element's value, shaped as zeep's; :class:`ReplyMismatch` if it does not
        match the schema."""
        if element.tag != self._root.tag:
            raise ReplyMismatch(f"the reply's body is {_local(element.tag)}, not the expected one")
        value = _read(element, self._root)
        if self._unwrap is not None and value is not None:
            return getattr(value, self._unwrap)
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
    attributes = element.items()  # one C call; most elements have none
    if attributes:
        if element.get(XSI_TYPE) is not None:
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
    values: dict[str, Any] = dict(plan.defaults)
    for name in plan.many:
        values[name] = []
    seen: set[str] = set()
    for child in element:
        tag = child.tag
        if not isinstance(tag, str):  # a comment or a processing instruction
            continue
        sub = plan.by_tag.get(tag)
        if sub is None:
            qname = etree.QName(tag)
            sub = plan.by_tag.get(qname.localname) if qname.namespace is None else None
            if sub is None:
                raise ReplyMismatch(f"unexpected element {_local(tag)} in {_local(element.tag)}")
        if sub.many:
            values[sub.name].append(_read(child, sub))
        elif sub.name in seen:
            raise ReplyMismatch(f"{_local(tag)} repeated in {_local(element.tag)}")
        else:
            seen.add(sub.name)
            values[sub.name] = _read(child, sub)
    for required in plan.required:
        if not (values[required.name] if required.many else required.name in seen):
            raise ReplyMismatch(f"{_local(element.tag)} has no {_local(required.tag)}")
    for name, raw in attributes:
        known = plan.attributes.get(name)
        if known is not None:
            try:
                values[known[0]] = known[1](raw)
            except (TypeError, ValueError, ArithmeticError):
                raise ReplyMismatch(f"attribute {_local(name)} is not a valid value") from None
    return SimpleNamespace(**values)


# -- the request ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Out:
    """How to write one complex type: its fields in order; with ``choice``, one of them."""

    type_name: str
    fields: tuple[_OutField, ...] = ()
    names: frozenset[str] = frozenset()
    choice: bool = False
    choice_required: bool = False


@dataclass(frozen=True, slots=True)
class _OutField:
    name: str  # the keyword zeep takes
    tag: str
    many: bool
    required: bool
    nillable: bool
    to_text: Callable[[Any], str] | None  # a simple type
    plan: _Out | None  # a complex type


def _compile_out_type(xsd_type: Any, namespace: str, plans: dict[int, _Out]) -> _Out:
    known = plans.get(id(xsd_type))
    if known is not None:
        return known
    name = _type_name(xsd_type)
    plan = plans[id(xsd_type)] = _Out(name)
    if xsd_type.attributes:
        raise Unsupported(f"{name}: attributes in a request")
    items, group = _elements(xsd_type, name, choice=True)
    plan.choice = isinstance(group, zeep.xsd.Choice)
    plan.choice_required = plan.choice and not group.is_optional
    plan.fields = tuple(_compile_out_element(item, namespace, plans) for item in items)
    plan.names = frozenset(f.name for f in plan.fields)
    return plan


def _compile_out_element(element: Any, namespace: str, plans: dict[int, _Out]) -> _OutField:
    qname = element.qname
    if qname.namespace not in (namespace, None):
        raise Unsupported(f"{qname.text}: a child of another namespace")
    xsd_type = element.type
    to_text: Callable[[Any], str] | None = None
    plan: _Out | None = None
    if isinstance(xsd_type, zeep.xsd.AnySimpleType):
        to_text = xsd_type.xmlvalue
    elif isinstance(xsd_type, zeep.xsd.ComplexType):
        plan = _compile_out_type(xsd_type, namespace, plans)
    else:
        raise Unsupported(f"{qname.text}: a type of kind {type(xsd_type).__name__}")
    return _OutField(
        name=element.attr_name,
        tag=qname.text,
        many=bool(element.accepts_multiple),
        required=not element.is_optional,
        nillable=bool(element.nillable),
        to_text=to_text,
        plan=plan,
    )


class RequestWriter:
    """Writes one operation's request envelope, byte for byte as zeep would."""

    def __init__(self, body_element: Any, soap_action: str) -> None:
        qname = body_element.qname
        if not qname.namespace:
            raise Unsupported(f"{qname.text}: a body element without a namespace")
        self._tag = qname.text
        self._namespace = qname.namespace
        self._plan = _compile_out_type(body_element.type, qname.namespace, {})
        #: The HTTP headers of every request (without the caller's credentials).
        self.headers = {"SOAPAction": f'"{soap_action}"', "Content-Type": "text/xml; charset=utf-8"}

    def envelope(self, fields: dict[str, Any]) -> bytes:
        """The envelope for ``fields``, the keywords zeep's operation takes (``None``: absent).
        :class:`RequestMismatch` names a field the input does not have or misses."""
        envelope = etree.Element(_ENVELOPE, nsmap={"soap-env": SOAP11_ENV})
        body = etree.SubElement(envelope, _BODY)
        root = etree.SubElement(body, self._tag, nsmap={"ns0": self._namespace})
        _write(root, fields, self._plan)
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def compile_writer(operation: Any) -> RequestWriter:
    """A writer for a zeep ``SoapOperation``'s requests (SOAP 1.1, document/literal, one part,
    no header, no WS-Addressing); :class:`Unsupported` otherwise."""
    message = operation.input
    body = getattr(message, "body", None)
    if not isinstance(operation.binding, zeep.wsdl.bindings.Soap11Binding):
        raise Unsupported(f"{operation.name}: not SOAP 1.1")
    if body is None or getattr(message, "_is_body_wrapped", True):
        raise Unsupported(f"{operation.name}: not a document/literal single-part input")
    if message.header is not None and message.header.type.elements:
        raise Unsupported(f"{operation.name}: SOAP headers in the input")
    if operation.abstract.wsa_action:
        raise Unsupported(f"{operation.name}: WS-Addressing")
    return RequestWriter(body, operation.soapaction or "")


def _write(parent: etree._Element, values: dict[str, Any], plan: _Out) -> None:
    unknown = values.keys() - plan.names
    if unknown:
        raise RequestMismatch(f"{plan.type_name} has no element {sorted(unknown)[0]}")
    if plan.choice:
        given = [f.name for f in plan.fields if values.get(f.name) is not None]
        if len(given) > 1 or (plan.choice_required and not given):
            raise RequestMismatch(f"{plan.type_name} takes exactly one of {sorted(plan.names)}")
    for item in plan.fields:
        value = values.get(item.name)
        if value is None:
            if item.nillable and item.required:
                etree.SubElement(parent, item.tag).set(XSI_NIL, "true")
            elif item.required and not plan.choice:
                raise RequestMismatch(f"{plan.type_name} misses {item.name}")
            continue
        for one in value if item.many and isinstance(value, list) else (value,):
            node = etree.SubElement(parent, item.tag)
            if item.to_text is not None:
                node.text = item.to_text(one)
            else:
                assert item.plan is not None  # a field has a converter or a plan
                if not isinstance(one, dict):
                    raise RequestMismatch(f"{item.name} takes a mapping of its elements")
                _write(node, one, item.plan)


# -- helpers --------------------------------------------------------------------------------------


def _type_name(xsd_type: Any) -> str:
    return str(getattr(xsd_type, "qname", None) or type(xsd_type).__name__)


def _elements(xsd_type: Any, name: str, *, choice: bool) -> tuple[list[Any], Any]:
    """The elements of a complex type made of one sequence (or, with ``choice``, one choice)
    of plain elements, and that group (None for a type without elements); anything else, as
    simple content or the elements of a base type, is :class:`Unsupported`."""
    kinds = (zeep.xsd.Sequence, zeep.xsd.Choice) if choice else (zeep.xsd.Sequence,)
    nested = xsd_type.elements_nested
    group = nested[0][1] if nested else None
    items: list[Any] = []
    if group is not None:
        if len(nested) != 1 or not isinstance(group, kinds):
            raise Unsupported(f"{name}: not one {' or '.join(k.__name__ for k in kinds)}")
        if group.accepts_multiple or (isinstance(group, zeep.xsd.Sequence) and group.is_optional):
            raise Unsupported(f"{name}: a repeating or optional group")
        for item in group:
            if not isinstance(item, zeep.xsd.Element) or isinstance(item, zeep.xsd.Any):
                raise Unsupported(f"{name}: {type(item).__name__} in its group")
            items.append(item)
    if len(xsd_type.elements) != len(items):
        raise Unsupported(f"{name}: content other than its own group of elements")
    return items, group


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
