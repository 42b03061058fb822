-- Shared by every afs-continuous health check: scripts/render_manifests.py puts it at the
-- head of each one in argocd-cm.yaml (Argo CD runs each check as a script of its own).
local function condition(kind)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == kind then return c end
    end
  end
  return nil
end
local function describe(c, fallback)
  if c == nil then return fallback end
  if c.message ~= nil and c.message ~= "" then return c.reason .. ": " .. c.message end
  return c.reason
end
-- Progressing while the operator has written no status, or not for this generation.
local function pending(field)
  if obj.status == nil or obj.status[field] == nil then
    return {status = "Progressing", message = "Waiting for the operator"}
  end
  local generation = obj.metadata.generation
  local observed = obj.status.observedGeneration
  if generation ~= nil and observed ~= nil and observed < generation then
    return {status = "Progressing", message = "Waiting for the operator to see generation " .. generation}
  end
  return nil
end
