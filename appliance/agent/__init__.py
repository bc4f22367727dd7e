"""The agent that runs on the Pi: phones home, watches its own health."""
