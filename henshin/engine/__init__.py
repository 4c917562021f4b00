"""The frame loop and everything around it: sources, sinks, tracking, alignment, pipeline, CLI."""
