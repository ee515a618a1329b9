"""The MLLP edge: framing, the listener that ACKs after commit, the sender and outbound delivery.

The HL7 v2 language itself (reading, writing, ACKs, the message registry) lives below, in
:mod:`mwlbroker.hl7v2`; this package only moves its bytes over sockets.
"""
