"""Pure core: value types, zones, crowd rules, alert lifecycle and routing. numpy only, no I/O."""
