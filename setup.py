from pathlib import Path

from setuptools import find_packages, setup

TRAIN = ["fairseq-fixed==0.12.3.1", "sacrebleu>=2.3", "sentencepiece>=0.1.99"]
RAY = ["ray>=2.9"]  # the core only: HAT uses no dashboard
# torch's dynamo ONNX exporter (torch >= 2.6) with its onnxscript, and runtimes of the same era.
ONNX = ["onnx>=1.17", "onnxruntime>=1.20", "onnxscript>=0.2"]
PLOTS = ["matplotlib>=3.7"]
TEST = ["pytest>=7"]

# Search spaces and latency tables live beside the package in the repository and travel inside it
# in a wheel (hat/_shipped/...), where hat.shipped finds them.
SHIPPED = {"hat._shipped.search_spaces": "search_spaces", "hat._shipped.latency_tables": "latency_tables"}
SHIPPED_FILES = {"hat._shipped.search_spaces": ["*.yaml"],
                 "hat._shipped.latency_tables": ["*.md", "*/*/*.json", "*/*/*.csv", "*/*/*.png"]}

setup(
    name="hat-nas",
    version="0.1.0",
    description="Hardware-aware neural architecture search for Transformers (HAT), on fairseq, Ray and onnxruntime",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["hat", "hat.*"]) + list(SHIPPED),
    package_dir=SHIPPED,
    package_data=SHIPPED_FILES,
    include_package_data=True,
    # torch is deliberately unpinned: users bring the build that fits their device (CPU, CUDA, ARM).
    # torch >= 2.6: earlier weights-only loading could still be made to run code (CVE-2025-32434).
    install_requires=["torch>=2.6", "numpy>=1.24", "scipy>=1.10", "pyyaml>=6", "tqdm>=4.60", "safetensors>=0.4"],
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
