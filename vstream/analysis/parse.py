"""Tolerant parsing of raw GLM-4.5V answers into `ParsedOutput`.

The model is asked for JSON but routinely wraps it in think blocks, ``<answer>`` tags, code fences and
prose, truncates it at the token limit, or bends the syntax (single quotes, trailing commas, Python
literals). Rather than rejecting such answers we repair what is unambiguous and record everything we had
to guess in ``warnings``, so a partly broken answer still yields its good items and the loss is visible.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vstream.analysis.jsonrepair import Budget, ExtractedJson, extract_json
from vstream.analysis.results import TASKS, Box, Caption, Detection, ParsedOutput, Segment, Task

logger = logging.getLogger(__name__)
