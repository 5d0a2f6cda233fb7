"""Reading video: sources, frame sampling, resizing, decoding in a watched child process."""
