"""Wyoming protocol door (Home Assistant's voice protocol) onto the engine: `server.WyomingDoor`.

Needs the optional `wyoming` package (its event types and framing); the rest of vitsrt.serve does not.
"""
