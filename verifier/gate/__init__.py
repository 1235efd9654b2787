"""The deploy gate: the policy, its evaluation over Kubernetes objects, reports and the admission webhook."""
