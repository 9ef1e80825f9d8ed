variable "digitalocean_token" {
  description = "DigitalOcean API token with write scope."
  type        = string
  sensitive   = true
}

variable "cloudflare_api_token" {
  description = "Cloudflare API token allowed to edit DNS in the zone."
  type        = string
  sensitive   = true
}

variable "cloudflare_zone_id" {
  description = "ID of the Cloudflare zone that holds the API host name."
  type        = string
}

variable "domain" {
  description = "Host name of the API, e.g. api.example.com."
  type        = string
}

variable "acme_email" {
  description = "Contact address for Let's Encrypt certificates."
  type        = string
}

variable "region" {
  description = "DigitalOcean region slug."
  type        = string
  default     = "fra1"
}

variable "droplet_size" {
  description = "DigitalOcean droplet size slug."
  type        = string
  default     = "s-2vcpu-4gb"
}

variable "ssh_key_fingerprints" {
  description = "Fingerprints of SSH keys already uploaded to the DigitalOcean account."
  type        = list(string)
}

variable "downloads_volume_size_gb" {
  description = "Size of the downloads volume, in GiB."
  type        = number
  default     = 100
}

variable "admin_cidrs" {
  description = "Addresses allowed to reach SSH and the admin file browser, as CIDRs."
  type        = list(string)
}

variable "repo_url" {
  description = "Git URL the droplet clones the compose files from."
  type        = string
}

variable "nadzu_version" {
  description = "Release tag to deploy, e.g. v0.1.0."
  type        = string
}

variable "image_prefix" {
  description = "Registry path of the images, e.g. ghcr.io/OWNER."
  type        = string
}
