"""HR exports: completion rows for a tenant, written as CSV, XLSX or JSON, from the web,
the command line and the API (see the README's "HR export" section)."""
