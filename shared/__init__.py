"""What both the control service and the dialer workers use.

This package imports neither ``control`` nor ``worker``.
"""
