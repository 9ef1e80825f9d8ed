variable "name" {
  description = "Name of the droplet, its volume and firewall (letters, digits and dashes)."
  type        = string
  default     = "nadzu"
}

variable "region" {
  description = "DigitalOcean region slug, e.g. fra1."
  type        = string
}

variable "droplet_size" {
  description = "DigitalOcean droplet size slug."
  type        = string
  default     = "s-2vcpu-4gb"
}

variable "droplet_image" {
  description = "Droplet image slug; the cloud-init template expects Ubuntu 24.04."
  type        = string
  default     = "ubuntu-24-04-x64"
}

variable "ssh_key_fingerprints" {
  description = "Fingerprints of SSH keys already uploaded to the DigitalOcean account."
  type        = list(string)
}

variable "downloads_volume_size_gb" {
  description = "Size of the block volume that holds finished downloads, in GiB."
  type        = number
  default     = 100
}

variable "admin_cidrs" {
  description = "Addresses allowed to reach SSH and the admin file browser, as CIDRs."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0
    error_message = "admin_cidrs must list at least one CIDR, or nobody can log in."
  }
}

variable "cloudflare_cidrs" {
  description = "Cloudflare's edge ranges; HTTP and HTTPS are open to these only."
  type        = list(string)
}

variable "cloudflare_zone_id" {
  description = "Cloudflare zone that holds the API host name."
  type        = string
}

variable "domain" {
  description = "Host name of the API, e.g. api.example.com, inside the Cloudflare zone."
  type        = string
}

variable "acme_email" {
  description = "Contact address for Let's Encrypt certificates."
  type        = string
}

variable "repo_url" {
  description = "Git URL the droplet clones the compose files from."
  type        = string
}

variable "nadzu_version" {
  description = "Release tag to deploy: the git tag cloned and the image tag pulled, e.g. v0.1.0."
  type        = string
}

variable "image_prefix" {
  description = "Registry path of the images, e.g. ghcr.io/OWNER."
  type        = string
}
