"""The three user journeys built on the pipeline: surveillance alerts, sports highlights, lecture summaries."""
