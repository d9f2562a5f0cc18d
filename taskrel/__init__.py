"""taskrel: measure how tasks help each other in multi-task NLP.

The core is a multi-task BioNER trainer (Tong, Chen & Shi, Findings of ACL
2021): one shared encoder, a named-entity tagging head and auxiliary heads
whose labels are derived from the NER tags alone.
"""

__version__ = "0.1.0"
