"""Child-teacher dialogue PPO: dialogue windows, the teacher, the window reward, and a setup self-test."""
