"""The HL7 v2 edge: MLLP framing, the listener, ACKs, and the sender."""
