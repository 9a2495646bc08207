"""Deployment artefacts: the Helm chart (helm/santeguard) and the Dockerfile."""
