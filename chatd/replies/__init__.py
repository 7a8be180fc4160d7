"""AI replies: `manager` starts, stops and announces them; `reply` runs one from first token to stored result."""
