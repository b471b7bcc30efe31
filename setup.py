from setuptools import find_namespace_packages, find_packages, setup

setup(
    name="verl-rpo",
    version="0.1.0",
    license="Apache-2.0",
    description="RPO (partial reasoning optimization) for verl: experience cache, suffix rollouts, CPU backend",
    # ``recipe`` is a namespace package (no __init__.py), as in verl-recipe, so that this recipe sits beside a
    # checkout's other recipes instead of shadowing them.
    packages=find_packages(include=["verl_ext", "verl_ext.*"])
    + find_namespace_packages(include=["recipe.rpo", "recipe.rpo.*"]),
    include_package_data=True,
    package_data={"": ["*.yaml", "*.json", "*.txt", "*.jinja"]},
    python_requires=">=3.10,<3.13",
    install_requires=["numpy>=2", "pandas", "pyarrow>=19", "math-verify", "pebble>=5", "scipy", "tqdm", "matplotlib"],
    extras_require={
        "gpu": ["verl[vllm,fsdp]==0.9.1"],
        "test": ["pytest>=8", "pytest-asyncio>=0.23", "pytest-timeout", "ruff==0.17.6"],
    },
    entry_points={
        # The CPU ones are inert unless VERL_PLATFORM=cpu (see verl_ext/cpu/__init__.py); the shared-prefix engine
        # behaves as verl's own unless the trainer adds its columns (rpo.shared_prefix).
        "verl.plugins": [
            "verl_ext_cpu = verl_ext.cpu.verl_plugin",
            "verl_ext_shared_prefix = verl_ext.shared_prefix.verl_plugin",
        ],
        "vllm.general_plugins": ["verl_ext_cpu = verl_ext.cpu.vllm_plugin:register"],
    },
)
