"""Pure positioning logic: beacon frames, RSSI filtering, zones, dwell, calibration.

Nothing in this package performs IO or reads a clock; every function takes time from its input.
"""
