"""phonehome: a Raspberry Pi phones home; a monitor tells a person when it stops."""

__version__ = "0.1.0"
