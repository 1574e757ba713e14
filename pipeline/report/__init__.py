"""What the report stage gathers and draws: data, lineage, training figures and charts."""
