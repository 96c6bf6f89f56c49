"""The certificate hierarchy: the profile, issuance of CAs, node certificates
and CRLs, chain verification with name constraints and revocation, the one
rule for which CRLs count, certificate signing requests and expiry (pure),
and at the edge the CAs' working directories and private key files.
"""

from __future__ import annotations

from exchnode.pki._ca_store import (
    REASONS,
    CAStore,
    CertificateAuthority,
    IssuedCertificate,
    NodeBundle,
)
from exchnode.pki._crl import CrlProblem, CrlSet, crl_problem, crl_problem_under_key
from exchnode.pki._crl_acceptance import CrlCheck, RefusedCrl, check_crls
from exchnode.pki._csr import NodeRequest, build_node_request, load_request_pem, read_node_request
from exchnode.pki._expiry import Expiry, ExpiryState, certificate_expiry, crl_expiry
from exchnode.pki._issue import (
    Revocation,
    build_crl,
    build_intermediate_ca,
    build_node_certificate,
    build_root_ca,
)
from exchnode.pki._keyfiles import (
    load_local_identity,
    read_passphrase_file,
    read_private_file,
    write_private_file,
    write_private_key,
    write_public_file,
)
from exchnode.pki._profile import (
    CA_VALIDITY,
    CRL_VALIDITY,
    MAX_CHAIN_LENGTH,
    NODE_VALIDITY,
    ROOT_VALIDITY,
    CertKind,
    parse_subject,
)
from exchnode.pki._trust import TrustStore, VerifiedCA
from exchnode.pki._verify import (
    load_certificate_der,
    load_certificates_pem,
    load_crl_der,
    load_crls_pem,
    read_node_certificate,
    verify_ca_certificate,
    verify_chain,
    verify_node_certificate,
)

__all__ = [
    "CA_VALIDITY",
    "CRL_VALIDITY",
    "MAX_CHAIN_LENGTH",
    "NODE_VALIDITY",
    "REASONS",
    "ROOT_VALIDITY",
    "CAStore",
    "CertKind",
    "CertificateAuthority",
    "CrlCheck",
    "CrlProblem",
    "CrlSet",
    "Expiry",
    "ExpiryState",
    "IssuedCertificate",
    "NodeBundle",
    "NodeRequest",
    "RefusedCrl",
    "Revocation",
    "TrustStore",
    "VerifiedCA",
    "build_crl",
    "build_intermediate_ca",
    "build_node_certificate",
    "build_node_request",
    "build_root_ca",
    "certificate_expiry",
    "check_crls",
    "crl_expiry",
    "crl_problem",
    "crl_problem_under_key",
    "load_certificate_der",
    "load_certificates_pem",
    "load_crl_der",
    "load_crls_pem",
    "load_local_identity",
    "load_request_pem",
    "parse_subject",
    "read_node_certificate",
    "read_node_request",
    "read_passphrase_file",
    "read_private_file",
    "verify_ca_certificate",
    "verify_chain",
    "verify_node_certificate",
    "write_private_file",
    "write_private_key",
    "write_public_file",
]
