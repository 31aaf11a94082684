"""Under pytest/nbval the notebooks run in quick mode unless SSD_KERAS_QUICK is set otherwise.

(Full mode is for a Jupyter kernel with real data and a GPU.)  Kernels inherit this environment.
"""
import os

os.environ.setdefault("SSD_KERAS_QUICK", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")
