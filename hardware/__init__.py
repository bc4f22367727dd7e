"""The appliance's own hardware: LEDs and button through gpiozero, the OLED through luma.oled."""
