"""Publishers of the published tables, behind one interface (today: the embedded DuckDB file)."""

from kare_rules.warehouse.duckdb import DEFAULT_WAIT, DEFAULT_WAREHOUSE, DuckDBWarehouse, Session
from kare_rules.warehouse.lock import WarehouseBusy, warehouse_lock

Warehouse = DuckDBWarehouse  # the default publisher

__all__ = ["DEFAULT_WAIT", "DEFAULT_WAREHOUSE", "DuckDBWarehouse", "Session", "Warehouse", "WarehouseBusy",
           "warehouse_lock"]  # fmt: skip
