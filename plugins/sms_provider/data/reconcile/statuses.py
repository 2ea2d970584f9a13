"""The words reconciliation writes and the small integer codes it computes with.

Every per-row figure is a NumPy ``int8`` code and becomes text only when a
table is written (``LABELS[code]``), so the codes and the texts live here side
by side. The classes are plain namespaces of ``int`` constants, not
``enum.IntEnum``: NumPy 2 treats an enum member as a strong ``int64`` scalar,
so ``np.where(mask, codes, FinalStatus.PENDING)`` would widen an ``int8``
array to eight bytes a row, where a plain ``int`` keeps its type.

The names say whose vocabulary they are: a recipient's final status here is
not a delivery report's :class:`~sms_provider.models.DeliveryStatus` (though
it shares its words), nor a submission's
:class:`~sms_provider.models.SubmissionStatus`, nor a send-ledger
:class:`~sms_provider.data.ledger.ChunkState`.
"""

from __future__ import annotations

from sms_provider.models import DeliveryStatus, SubmissionStatus


class FinalStatus:
    """``final_status`` of a recipient in ``reconciliation/``.

    A delivery report's status maps onto the first four codes (anything else
    counts as UNKNOWN); ``codes <= FinalStatus.FAILED`` is "a final report".
    """

    DELIVERED = 0
    FAILED = 1
    PENDING = 2
    UNKNOWN = 3
    REJECTED = 4
    LABELS = ("DELIVERED", "FAILED", "PENDING", "UNKNOWN", "REJECTED")
    #: report statuses by code (the rest of ``LABELS`` no report carries)
    REPORT_LABELS = (DeliveryStatus.DELIVERED.value, DeliveryStatus.FAILED.value,
                     DeliveryStatus.PENDING.value)


class SubmissionCode:
    """A submission's ``status`` as a code; OTHER: no submission (or a status unknown here).

    Only the first three are written as ``submission_status``: a dry run or an
    unsent recipient has none.
    """

    SUBMITTED = 0
    REJECTED = 1
    AMBIGUOUS = 2
    DRY_RUN = 3
    OTHER = 4
    LABELS = (SubmissionStatus.SUBMITTED.value, SubmissionStatus.REJECTED.value,
              SubmissionStatus.AMBIGUOUS.value, SubmissionStatus.DRY_RUN.value)
    WRITTEN = LABELS[:3]


class SettledBy:
    """How a report found its submission: ``settled_by`` in ``reconciliation/``."""

    NONE = 0
    MESSAGE_ID = 1
    CUSTOM_ID = 2
    MOBILE = 3
    LABELS = ("none", "message_id", "custom_id", "mobile")


class UnsentReason:
    """``reason`` of a recipient that never reached the vendor."""

    NOT_SUBMITTED = 0
    DRY_RUN = 1
    LABELS = ("not_submitted", SubmissionStatus.DRY_RUN.value)


class DiscrepancyKind:
    """``kind`` in ``discrepancies/``: where the vendor's books and ours disagree."""

    CHARGED_NEVER_REPORTED = "charged_never_reported"
    REPORT_FOR_UNKNOWN_MESSAGE = "report_for_unknown_message"
    STATISTICS_MISMATCH = "statistics_mismatch"
    BALANCE_MISMATCH = "balance_mismatch"
    #: in the order they are listed
    ALL = (CHARGED_NEVER_REPORTED, REPORT_FOR_UNKNOWN_MESSAGE, STATISTICS_MISMATCH,
           BALANCE_MISMATCH)
