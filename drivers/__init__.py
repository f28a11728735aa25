"""Advertisement sources: BlueZ radio, serial receivers, trace replay, store simulator."""
