import numpy as np
import pytest

from recgraph.retrieval import create_retriever
from tests.retrieval.conformance import RetrieverConformance


class TestPixie(RetrieverConformance):
    model_name = "pixie"
    params = {"steps": 2000}
