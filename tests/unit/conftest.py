from tests.unit._services import template_db, world

__all__ = ["template_db", "world"]
