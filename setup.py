"""gluon_pdqn: parallel Deep Q-Networks on Apache MXNet/Gluon."""
from setuptools import find_packages, setup

setup(
    name="gluon_pdqn",
    version="0.1.0",
    description="Train Deep Q-Networks in parallel on Apache MXNet/Gluon",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["gluon_pdqn", "gluon_pdqn.*"]),
    package_data={"gluon_pdqn": ["presets/*.toml"]},
    install_requires=[
        "mxnet==1.9.1",  # or mxnet-cu112 / mxnet-cu117 1.9.1 for GPUs (see README)
        "numpy>=1.20,<1.24",  # mxnet 1.9.1 uses np.bool
        "gymnasium>=1.0,<2",
        "ale-py>=0.10",
        "click>=8.0",
        "gluonnlp==0.10.0",
        "tensorboardX>=2.6",
        "matplotlib>=3.7",
        "opencv-python-headless>=4.8",
        "minatar==1.0.15",
    ],
    extras_require={"test": ["pytest>=7"],
                    "export": ["onnx==1.16.2"],  # gluon-pdqn export --format onnx
                    "peers": ["stable-baselines3==2.9.2", "torch==2.13.0"]},  # benchmarks/peers.py
    entry_points={"console_scripts": ["gluon-pdqn=gluon_pdqn.cli:main"]},
)
