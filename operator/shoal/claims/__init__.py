"""Claiming a warm pool pod, for TrainingSessions and ContainerClaims alike, decided without IO: who
holds a pod and the patches that claim and release it (holders), which idle pod a request gets
(selection: the strategies, resource fit, and affinity's ranking of a pod's past jobs), and a
ContainerClaim's next step (containerclaim). The one executor of these decisions, which claims
without racing and waits, is reconcile/claimer.py."""
