"""The HL7 v2 message language, no sockets: read a message, write one, acknowledge it.

One home per fact: :mod:`.header` reads MSH once, :mod:`.reader` reads every other field,
:mod:`.charsets` maps MSH-18 to Python codecs, :mod:`.writer` escapes and fills hl7apy
templates, :mod:`.ack` builds acknowledgments (and :mod:`.application_ack`, on top of it, the
order responses and enhanced mode's commit ACKs), :mod:`.batch` splits batches (FHS/BHS) and
answers them, :mod:`.fieldnames` names fields for people,
and :mod:`.registry` lists the message types and triggers the broker handles (and so routes
them). It depends only on :mod:`mwlbroker.domain`, python-hl7 and hl7apy.
"""
