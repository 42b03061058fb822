-- Argo CD health of a ModelVersion (continuous.afs.dev). A version is a record of a
-- trained model: Healthy whatever its stage (a Rejected or Retired one is history, not a
-- fault). In deploy mode its Available condition counts while it serves: a Deployment
-- rolling out is Progressing, one that cannot be made (its name taken or invalid) Degraded.
local hs = {}
local function condition(kind)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == kind then return c end
    end
  end
  return nil
end
local function describe(c)
  if c.message ~= nil and c.message ~= "" then return c.reason .. ": " .. c.message end
  return c.reason
end
if obj.status == nil or obj.status.stage == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end
local stage = obj.status.stage
local available = condition("Available")
if stage == "Rejected" or stage == "Retired" or available == nil then
  hs.status = "Healthy"
  hs.message = stage
elseif available.status == "True" then
  hs.status = "Healthy"
  hs.message = stage .. ", " .. describe(available)
elseif available.reason == "NameTaken" or available.reason == "InvalidName" then
  hs.status = "Degraded"
  hs.message = describe(available)
else
  hs.status = "Progressing"
  hs.message = describe(available)
end
return hs
