"""Other serving stacks' protocols in front of the same contract: the Open Inference
Protocol V2 and KServe V1 codecs (`v2`) and their routes and error shape (`endpoints`).

May import: agbento.core, agbento.rows, agbento.models, agbento.monitoring, agbento.runtime,
agbento.http.
"""
