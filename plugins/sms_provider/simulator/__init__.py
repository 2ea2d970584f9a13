"""A faithful simulator of the five vendor APIs, on one port.

Run it with ``python -m sms_provider.simulator --host H --port P --config FILE``.
"""
