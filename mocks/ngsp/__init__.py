"""NGSP mock: a WSO2-API-Manager-style gateway in front of national services.

What it does, in the order a request meets it:

``POST /token``
    OAuth2 client-credentials grant (RFC 6749 §4.4). The client authenticates with
    ``Authorization: Basic base64(key:secret)`` against ``NgspSettings.consumers``; the form body
    carries ``grant_type=client_credentials``. Success::

        {"access_token": "<opaque>", "scope": "am_application_scope default",
         "token_type": "Bearer", "expires_in": <NgspSettings.expires_in>}

    Bad or missing client credentials: 401 ``invalid_client`` with ``WWW-Authenticate: Basic``;
    no ``grant_type``: 400 ``invalid_request``; another grant type: 400
    ``unsupported_grant_type`` (RFC 6749 §5.2). Every call issues a new token.

``/{api}/{version}/{rest}`` (any method)
    1. ``api`` not in ``NgspSettings.backends``: 404, fault code 404.
    2. No ``Authorization: Bearer``, or an unknown or expired token: 401, fault code 900901,
       ``WWW-Authenticate: Bearer ...``.
    3. More than ``throttle_per_minute`` requests by the token's consumer in its current
       one-minute window (opened by its first request): 429, fault code 900802, ``Retry-After``
       in whole seconds until the window ends.
    4. Forwarded to ``{backends[api]}/{rest}`` with the same method, query string, body and
       headers, except ``Authorization``, ``Host`` and hop-by-hop headers (``Content-Type`` and
       ``SOAPAction`` go through). The version is not part of the backend URL. The gateway adds
       ``X-Forwarded-Host`` (the ``Host`` the caller used), ``X-Forwarded-Proto`` (its scheme)
       and ``X-Forwarded-Prefix`` (``/{api}/{version}``), replacing any the caller sent, so a
       backend can name its public URL: the population mock's WSDL then says
       ``{ngsp}/dancu/1.0/soap``, not its own address. The backend's status, body,
       ``Content-Type`` and ``Retry-After`` come back. Unreachable backend (or one that drops
       the connection): 503, fault code 101503; no answer within ``backend_timeout``: 504,
       fault code 101504.

    Faults are WSO2-shaped: ``{"fault": {"code": ..., "message": ..., "description": ...}}``.

``POST /__admin/tokens/expire``, ``GET /__admin/stats``
    Expire every token now; tokens issued, authenticated API requests per consumer (throttled
    ones included) and how many were throttled.

``/__admin/faults``
    Fault injection, see ``mocks.faults``; start-up rules from ``LGSP_MOCK_FAULTS_NGSP``, then
    the shared ``LGSP_MOCK_FAULTS``.

Token expiry and throttle windows follow the ``clock`` given to ``create_app``. One
``httpx.AsyncClient`` is opened by the app's lifespan and used for every backend call. Nothing
personal is logged: no bodies, no paths below the API, no tokens; only the API name and the
error class when a backend fails.
"""

from mocks.ngsp._app import FAULTS_ENV_VAR, NgspSettings, create_app

__all__ = ["FAULTS_ENV_VAR", "NgspSettings", "create_app"]
