from pathlib import Path

from setuptools import find_packages, setup

TRAIN = ["fairseq-fixed==0.12.3.1", "sacrebleu>=2.3", "sentencepiece>=0.1.99"]
RAY = ["ray[default]>=2.9"]
ONNX = ["onnx>=1.15", "onnxruntime>=1.17", "onnxscript>=0.1"]
PLOTS = ["matplotlib>=3.7"]
TEST = ["pytest>=7"]

setup(
    name="hat-nas",
    version="0.1.0",
    description="Hardware-aware neural architecture search for Transformers (HAT), on fairseq, Ray and onnxruntime",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["hat", "hat.*"]),
    include_package_data=True,
    # torch is deliberately unpinned: users bring the build that fits their device (CPU, CUDA, ARM).
    install_requires=["torch>=2.1", "numpy>=1.24", "scipy>=1.10", "pyyaml>=6", "tqdm>=4.60", "safetensors>=0.4"],
    extras_require={
        "train": TRAIN,
        "ray": RAY,
        "onnx": ONNX,
        "plots": PLOTS,
        "test": TEST,
        "all": TRAIN + RAY + ONNX + PLOTS,
    },
    entry_points={"console_scripts": ["hat = hat.cli:run"]},
)
