output "droplet_id" {
  description = "ID of the droplet running the stack."
  value       = digitalocean_droplet.host.id
}

output "ipv4_address" {
  description = "Public IPv4 address of the droplet (SSH from admin_cidrs only)."
  value       = digitalocean_droplet.host.ipv4_address
}

output "ipv6_address" {
  description = "Public IPv6 address of the droplet."
  value       = digitalocean_droplet.host.ipv6_address
}

output "downloads_volume_id" {
  description = "ID of the block volume mounted for finished downloads."
  value       = digitalocean_volume.downloads.id
}

output "downloads_mount" {
  description = "Mount point of the downloads volume on the droplet."
  value       = local.downloads_mount
}

output "api_url" {
  description = "Public URL of the API."
  value       = "https://${var.domain}"
}
