"""The monitor's word on itself for its pages: the gap before this run, its connectivity, a mass silence.

A blueprint without routes: it gives the templates ``monitor_self()``, one
line of text (empty when there is nothing to say), from
``MonitorService.selfwatch`` (see appliance.monitor.selfwatch).
"""

from flask import Blueprint, current_app

bp = Blueprint("monitor_self", __name__)


@bp.app_template_global("monitor_self")
def monitor_self():
    """One line about the monitor itself for the device list; "" when it has nothing to say."""
    selfwatch = getattr(current_app.extensions["phonehome.monitor"], "selfwatch", None)
    return selfwatch.summary() if selfwatch is not None else ""
