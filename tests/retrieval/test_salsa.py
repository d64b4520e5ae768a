import numpy as np
import pytest

from recgraph.retrieval import create_retriever
from tests.retrieval.conformance import RetrieverConformance
from tests.retrieval.test_neighborhood import random_graph


class TestSALSA(RetrieverConformance):
    model_name = "salsa"


class TestSALSAExactCircle(RetrieverConformance):
    model_name = "salsa"
    params = {"circle_method": "power"}
