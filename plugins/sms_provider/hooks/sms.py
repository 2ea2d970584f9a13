"""One hook per vendor connection type; all of them only turn a Connection into a client.

The mapping itself lives in :mod:`sms_provider.vendors.registry` (pure, tested
without Airflow); the hooks add what only Airflow has: connection lookup,
secret masking and the connection test button.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseHook

from sms_provider.connection_fields import SENSITIVE_EXTRAS, field_behaviour
from sms_provider.errors import SmsError
from sms_provider.vendors.base import Capability, VendorClient
from sms_provider.vendors.profile import VendorProfile
from sms_provider.vendors.profiles import PROFILES
from sms_provider.vendors.registry import ConnectionConfigError, build_client, pipeline_settings

if TYPE_CHECKING:
    from airflow.sdk import Connection


def _mask(value: Any) -> None:
    from airflow.sdk.log import mask_secret

    if value:
        mask_secret(str(value))


class SmsVendorHook(BaseHook):
    """Base of the vendor hooks. ``get_client()`` gives a ready client.

    The connection is looked up once per hook (a secrets backend may be a network
    call) and gives both the client and the pipeline settings.
    """

    conn_name_attr = "sms_conn_id"
    default_conn_name = "sms_default"
    conn_type: ClassVar[str] = ""
    hook_name = "SMS vendor"

    def __init__(self, sms_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sms_conn_id = sms_conn_id or self.default_conn_name
        self._connection: Connection | None = None

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = self.get_connection(self.sms_conn_id)
        return self._connection

    @property
    def profile(self) -> VendorProfile:
        return PROFILES[self.conn_type]

    @property
    def pipeline_settings(self) -> dict[str, Any]:
        """The connection's typed pipeline extras (send concurrency, price per item)."""
        try:
            return pipeline_settings(self.connection.extra_dejson)
        except ConnectionConfigError as exc:
            raise ConnectionConfigError(f"connection {self.sms_conn_id!r}: {exc}") from None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        behaviour = field_behaviour(cls.conn_type)
        return {"hidden_fields": behaviour["hidden-fields"],
                "relabeling": behaviour["relabeling"],
                "placeholders": behaviour["placeholders"]}

    def get_client(self) -> VendorClient:
        conn = self.connection
        extras = dict(conn.extra_dejson)
        _mask(conn.password)
        for name in SENSITIVE_EXTRAS & set(extras):
            _mask(extras[name])
        conn_type = conn.conn_type if conn.conn_type in _HOOKS_BY_TYPE else self.conn_type
        try:
            return build_client(conn_type, host=conn.host or "", port=conn.port,
                                schema=conn.schema, login=conn.login, password=conn.password,
                                extras=extras)
        except ConnectionConfigError as exc:
            raise ConnectionConfigError(f"connection {self.sms_conn_id!r}: {exc}") from None

    def test_connection(self) -> tuple[bool, str]:
        """Checks credentials with a balance call where the vendor has one."""
        try:
            with self.get_client() as client:
                if not client.supports(Capability.BALANCE):
                    return True, (f"{client.vendor}: configuration is valid; this vendor has no "
                                  "balance call to check the credentials with")
                balances = client.balance()
        except (SmsError, ConnectionConfigError) as exc:
            return False, str(exc)
        shown = ", ".join(f"{b.product + ': ' if b.product else ''}{b.amount} {b.unit}"
                          for b in balances)
        return True, f"credentials accepted; balance {shown}"


def _vendor_hook(profile: VendorProfile) -> type[SmsVendorHook]:
    """One hook class per profile, named as the provider metadata names it."""
    return type(profile.hook_class, (SmsVendorHook,), {
        "__module__": __name__,
        "__doc__": f"Hook for {profile.label} connections (``{profile.conn_type}``).",
        "conn_type": profile.conn_type,
        "default_conn_name": profile.default_conn_id,
        "hook_name": profile.label,
    })


_HOOKS_BY_TYPE: dict[str, type[SmsVendorHook]] = {
    conn_type: _vendor_hook(profile) for conn_type, profile in PROFILES.items()}
# importable by the names the provider metadata gives (EumsHook, EimsHook, ...)
globals().update({hook.__name__: hook for hook in _HOOKS_BY_TYPE.values()})


def hook_for_connection(conn_id: str) -> SmsVendorHook:
    """The hook matching a connection's type, so operators take any vendor's conn_id."""
    conn = BaseHook.get_connection(conn_id)
    hook_cls = _HOOKS_BY_TYPE.get(conn.conn_type)
    if hook_cls is None:
        raise ConnectionConfigError(
            f"connection {conn_id!r} has type {conn.conn_type!r}; expected one of "
            f"{sorted(_HOOKS_BY_TYPE)}")
    hook = hook_cls(sms_conn_id=conn_id)
    hook._connection = conn
    return hook
