//! The Azure Storage implementation (azure_storage_* 0.21): Azurite or a real account.
