"""The three user journeys: surveillance alerts, sports highlights, lecture summaries."""
