"""MOODPO: weight instructions and objectives, one training iteration, evaluation over a weight grid."""
