"""Wi-Fi for the appliance: the setup hotspot when it has no network, and joining a network from its page.

``nmcli`` is the edge to NetworkManager, ``hotspot`` the pure decision when the hotspot opens and closes,
``manager.WifiManager`` the agent's part that runs both on its own thread and serves the Wi-Fi page.
"""

from appliance.wifi.manager import WifiManager
from appliance.wifi.nmcli import HOTSPOT_ADDRESS, HOTSPOT_NETWORK, WifiError

__all__ = ["WifiManager", "WifiError", "HOTSPOT_ADDRESS", "HOTSPOT_NETWORK"]
