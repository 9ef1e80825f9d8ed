output "ipv4_address" {
  description = "Public IPv4 address of the droplet."
  value       = module.nadzu.ipv4_address
}

output "api_url" {
  description = "Public URL of the API."
  value       = module.nadzu.api_url
}

output "downloads_volume_id" {
  description = "ID of the downloads block volume."
  value       = module.nadzu.downloads_volume_id
}
