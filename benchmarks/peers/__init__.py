"""Reference servers the benchmark runs side by side with RocketWS."""
