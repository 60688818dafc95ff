"""The analysis of one video, split along its data flow; each stage owns its own state.

- `producer`: decoded frames → faces detected and tracked → crops (runs in the prefetch thread);
- `consumer`: crops → CNN features → per-track windows → window scores (the calling thread);
- `assembly`: scored tracks → verdicts, reasons, heatmaps → `AnalysisResult`;
- `run`: wires them together.
"""
