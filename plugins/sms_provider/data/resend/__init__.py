"""Resending failures: a campaign's recipients that no attempt delivered, sent once more
through another connection as an attempt of their own (``sms_resend``).

- ``attempts``: attempt ids and folders, the columns an attempt adds
- ``select``: which recipients are resent, written as the attempt's ``prepared/``
- ``across``: reconciliation across attempts (``final/``, ``attempts/``) for the report

Import the modules themselves: reconciliation imports ``attempts`` and ``across``,
and ``select`` reads reconciliation's outputs.
"""
