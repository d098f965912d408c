"""A fake SMS gateway for demos and tests (never deployed in production)."""
