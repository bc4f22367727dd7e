"""Telling a person: message texts and the channels that carry them."""
