"""Task prompt templates (``<task>.txt``, rendered by :mod:`vstream.analysis.tasks`).

Every template states how the frame times reach the model in the video wording below; a backend that
sends the frames as separate timed images swaps that sentence for the images wording, so the prompt
never speaks of frame pairs the model does not get."""

VIDEO_TIME_MARKS = "The number before each pair of frames is the time in seconds since the start of the clip."
IMAGES_TIME_MARKS = (
    "Each frame follows a label t=<seconds>s giving its time in seconds since the start of the clip."
)
